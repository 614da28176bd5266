//! What a check gets: the disk, its capabilities, a private path prefix and helpers.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use stowage_runtime::{
    ByteRange, Capabilities, Disk, ObjectInfo, ObjectPath, Prefix, RequestContext, Role, StorageError, WriteOptions,
};

/// The disk under test, scoped to one check.
pub struct Harness {
    /// The disk.
    pub disk: Disk,
    /// What it declares.
    pub caps: Capabilities,
    /// A request context for its calls.
    pub ctx: RequestContext,
    scope: String,
}

impl Harness {
    pub(crate) fn new(disk: Disk, caps: Capabilities, scope: String) -> Harness {
        let ctx = RequestContext {
            role: Role::Testing,
            class: None,
            disk: disk.name().to_string(),
            driver: "under-test".into(),
            authenticated_as: None,
            actor: Some("conformance".into()),
            request_id: format!("conformance-{scope}"),
            metadata: Vec::new(),
        };
        Harness { disk, caps, ctx, scope }
    }

    /// `name` inside this check's private prefix.
    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.scope)
    }

    /// This check's private prefix, ending in `/`.
    pub fn prefix(&self) -> String {
        format!("{}/", self.scope)
    }

    /// `name` inside this check's private prefix, as a checked object path (what the disk's
    /// calls take); a failure names the path and what is wrong with it.
    pub fn object(&self, name: &str) -> Result<ObjectPath, String> {
        let path = self.path(name);
        ObjectPath::parse(&path).map_err(|e| format!("`{path}`: {e}"))
    }

    /// `name` inside this check's private prefix, as a checked listing prefix (`""`: all of
    /// this check's objects).
    pub fn listing(&self, name: &str) -> Result<Prefix, String> {
        listing(&self.path(name))
    }

    /// Writes `data` at `path` (relative to the scope).
    pub async fn put(&self, name: &str, data: &[u8]) -> Result<ObjectInfo, String> {
        self.put_with(name, data, &WriteOptions::default()).await
    }

    /// Writes `data` with options.
    pub async fn put_with(&self, name: &str, data: &[u8], options: &WriteOptions) -> Result<ObjectInfo, String> {
        self.disk
            .put_bytes(&self.ctx, &self.object(name)?, Bytes::copy_from_slice(data), options)
            .await
            .map_err(|e| format!("put {name}: {e}"))
    }

    /// Reads a whole object (or range).
    pub async fn get(&self, name: &str, range: Option<ByteRange>) -> Result<Vec<u8>, StorageError> {
        let path = ObjectPath::parse(&self.path(name))?;
        self.disk.get_bytes(&self.ctx, &path, range).await.map(|(_, b)| b)
    }
}

impl Harness {
    /// The owner tag of the check's resumable write `name` (stable for the write, unique per
    /// check).
    pub fn owner_tag(&self, name: &str) -> String {
        format!("conf-{}", &sha256_hex(self.path(name).as_bytes())[..24])
    }

    /// Opens a resumable write of `name`.
    pub async fn resumable_writer(&self, name: &str) -> Result<(ObjectPath, stowage_runtime::ObjectWriter), String> {
        let path = self.object(name)?;
        let w = self
            .disk
            .resumable_writer(&self.ctx, &path, &WriteOptions::default(), &self.owner_tag(name))
            .await
            .map_err(|e| format!("open a resumable writer: {e}"))?;
        Ok((path, w))
    }

    /// Why this disk's writes cannot be suspended (the `resume/*` checks are skipped), if
    /// they cannot. A driver that answers `unsupported` keeps its sessions in the host's memory.
    pub async fn cannot_suspend(&self) -> Option<String> {
        if self.disk.as_composite().is_some() {
            return Some("a disk made of other disks cannot suspend writes".into());
        }
        if !self.disk.resumable() {
            return Some("the driver does not export `resumable` (contract 0.3.1)".into());
        }
        let (_, mut w) = match self.resumable_writer("probe").await {
            Ok(w) => w,
            Err(e) => return Some(e),
        };
        let answer = w.suspend().await;
        let _ = w.abort().await;
        match answer {
            Err(StorageError::Unsupported(why)) => Some(format!("the driver's `suspend` answers unsupported ({why})")),
            _ => None,
        }
    }
}

/// `prefix` as a checked listing prefix; a failure names it and what is wrong with it.
pub fn listing(prefix: &str) -> Result<Prefix, String> {
    Prefix::parse(prefix).map_err(|e| format!("`{prefix}`: {e}"))
}

/// Lowercase hex sha256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic bytes that are not all alike.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Fails with `msg` unless `cond`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}
