//! Size limits and quotas per disk, enforced while a write streams: an object over
//! `max_object_mib`, or a write that would take the disk past `quota_gib`, is refused at the
//! chunk that crosses the line, and nothing is stored.
//!
//! A disk's usage is counted once per process (a listing of the whole disk, the first time a
//! write needs it) and kept current from then on: bytes are reserved as they stream, released
//! if the write fails, and an overwritten or deleted object's size is given back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OnceCell;

use crate::driver::Disk;
use crate::error::StorageError;
use crate::types::RequestContext;

/// A disk's limits and what it holds.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    /// Largest object, bytes.
    pub(crate) max_object: Option<u64>,
    /// Most bytes the disk may hold.
    pub(crate) quota: Option<u64>,
    /// Bytes stored and reserved, once counted.
    used: OnceCell<AtomicU64>,
}

impl Usage {
    /// The limits of a disk.
    pub(crate) fn new(max_object: Option<u64>, quota: Option<u64>) -> Arc<Usage> {
        Arc::new(Usage { max_object, quota, used: OnceCell::new() })
    }

    /// Whether any limit applies.
    pub(crate) fn limited(&self) -> bool {
        self.max_object.is_some() || self.quota.is_some()
    }

    /// The disk's usage, counted on first use.
    async fn used(&self, disk: &Disk, ctx: &RequestContext) -> Result<&AtomicU64, StorageError> {
        self.used
            .get_or_try_init(|| async {
                let mut total = 0u64;
                let mut cursor: Option<String> = None;
                loop {
                    let page = disk.list(ctx, &stowage_path::Prefix::all(), cursor.as_deref(), 1000).await?;
                    total = page.items.iter().fold(total, |t, i| t.saturating_add(i.size));
                    match page.next_cursor {
                        Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                        _ => break,
                    }
                }
                tracing::info!(disk = disk.name(), bytes = total, "counted the disk's usage for its quota");
                Ok(AtomicU64::new(total))
            })
            .await
    }

    /// Starts accounting one write on `disk` that replaces `replaced` bytes (0 for a new object).
    pub(crate) async fn begin(
        self: &Arc<Self>,
        disk: &Disk,
        ctx: &RequestContext,
        replaced: u64,
    ) -> Result<Reservation, StorageError> {
        if self.quota.is_some() {
            self.used(disk, ctx).await?;
        }
        Ok(Reservation { usage: self.clone(), disk: disk.name().to_string(), written: 0, replaced, done: false })
    }

    /// Gives back the bytes of an object that is gone.
    pub(crate) fn freed(&self, bytes: u64) {
        if let Some(used) = self.used.get() {
            let _ = used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(bytes)));
        }
    }
}

/// Opens `disk`'s writer for `path`, and (when the disk has limits) the write's reservation.
pub(crate) async fn open_writer(
    disk: &Disk,
    usage: Option<&Arc<Usage>>,
    ctx: &RequestContext,
    path: &stowage_path::ObjectPath,
    options: &crate::types::WriteOptions,
) -> Result<(crate::driver::ObjectWriter, Option<Reservation>), StorageError> {
    let reservation = reserve(disk, usage, ctx, path).await?;
    Ok((disk.writer(ctx, path, options).await?, reservation))
}

/// A write's reservation of `disk`'s limits, when it has any.
pub(crate) async fn reserve(
    disk: &Disk,
    usage: Option<&Arc<Usage>>,
    ctx: &RequestContext,
    path: &stowage_path::ObjectPath,
) -> Result<Option<Reservation>, StorageError> {
    Ok(match usage.filter(|u| u.limited()) {
        Some(usage) => {
            // An overwrite gives back what it replaces.
            let replaced = match usage.quota {
                Some(_) => match disk.stat(ctx, path).await {
                    Ok(info) => info.size,
                    Err(StorageError::NotFound(_)) => 0,
                    Err(e) => return Err(e),
                },
                None => 0,
            };
            Some(usage.begin(disk, ctx, replaced).await?)
        }
        None => None,
    })
}

/// The bytes one write has taken so far; released unless the write commits.
#[derive(Debug)]
pub(crate) struct Reservation {
    usage: Arc<Usage>,
    disk: String,
    written: u64,
    replaced: u64,
    done: bool,
}

impl Reservation {
    /// Takes `n` more bytes, or refuses them.
    pub(crate) fn take(&mut self, n: u64) -> Result<(), StorageError> {
        let after = self.written.saturating_add(n);
        if let Some(max) = self.usage.max_object
            && after > max
        {
            return Err(StorageError::TooLarge { disk: self.disk.clone(), limit: max });
        }
        if let (Some(quota), Some(used)) = (self.usage.quota, self.usage.used.get()) {
            let taken = used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                let u = u.checked_add(n)?;
                (u <= quota.saturating_add(self.replaced)).then_some(u)
            });
            if taken.is_err() {
                return Err(StorageError::QuotaExceeded { disk: self.disk.clone(), quota });
            }
        }
        self.written = after;
        Ok(())
    }

    /// The write committed: its bytes stay, the object it replaced goes.
    pub(crate) fn commit(mut self) {
        self.done = true;
        self.usage.freed(self.replaced);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done && self.usage.quota.is_some() {
            self.usage.freed(self.written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_reserved_as_they_come_and_released_when_a_write_fails() {
        let usage = Usage::new(Some(100), Some(150));
        let _ = usage.used.set(AtomicU64::new(40));
        let reservation =
            |replaced| Reservation { usage: usage.clone(), disk: "d".into(), written: 0, replaced, done: false };
        let mut a = reservation(0);
        a.take(60).unwrap();
        assert!(matches!(a.take(41), Err(StorageError::TooLarge { limit: 100, .. })));
        let mut b = reservation(0);
        b.take(50).unwrap();
        assert!(
            matches!(b.take(1), Err(StorageError::QuotaExceeded { quota: 150, .. })),
            "40 + 60 + 50 fill the quota"
        );
        drop(b);
        assert_eq!(usage.used.get().unwrap().load(Ordering::Acquire), 100, "a failed write gives its bytes back");
        a.commit();
        // An overwrite of a 30-byte object may use those 30 bytes.
        let mut c = reservation(30);
        c.take(80).unwrap();
        c.commit();
        assert_eq!(usage.used.get().unwrap().load(Ordering::Acquire), 150);
    }
}
