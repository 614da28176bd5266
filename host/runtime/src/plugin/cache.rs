//! The compiled-code cache: components compiled once are kept on disk so a restart with
//! unchanged plugins skips compilation.
//!
//! An entry is keyed by the component's sha256 (of bytes that already passed signature
//! checks) and the engine's identity (wasmtime version and settings). Its bytes are
//! authenticated with HMAC-SHA256 under a key only this host holds (`cache.key`, mode 0600), so
//! a corrupted, truncated or foreign entry is detected, recompiled and replaced, never loaded:
//! precompiled code is only ever deserialized when this host produced it.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8] = b"stowage-compiled-v1\n";
const MAC_LEN: usize = 32;

/// Where compiled components are kept, and the key that authenticates them.
pub struct CompileCache {
    dir: PathBuf,
    key: [u8; 32],
    engine_id: String,
}

/// Why an entry was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No entry yet.
    Absent,
    /// An entry that failed authentication or could not be loaded (it is replaced).
    Rejected(String),
}

impl CompileCache {
    /// Opens (creating if needed) the cache in `dir` for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<CompileCache> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        check_private(dir)?;
        let key_path = dir.join("cache.key");
        let key = match std::fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                key
            }
            _ => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
                let tmp = dir.join(format!("cache.key.{}", std::process::id()));
                let mut f =
                    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
                f.write_all(&key)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &key_path)?;
                // Another process may have won the race: use whatever is in place now.
                match std::fs::read(&key_path) {
                    Ok(bytes) if bytes.len() == 32 => key.copy_from_slice(&bytes),
                    _ => return Err(std::io::Error::other("cache key vanished")),
                }
                key
            }
        };
        check_private(&key_path)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_id = format!("{:016x}", h.finish());
        Ok(CompileCache { dir: dir.to_path_buf(), key, engine_id })
    }

    fn entry(&self, component_sha256: &str) -> PathBuf {
        self.dir.join(format!("{component_sha256}-{}.cwasm", self.engine_id))
    }

    fn mac(&self, component_sha256: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(component_sha256.as_bytes());
        mac.update(self.engine_id.as_bytes());
        mac.update(&Sha256::digest(payload));
        mac
    }

    /// The compiled component for `component_sha256`, if a valid entry exists.
    pub fn load(&self, engine: &Engine, component_sha256: &str) -> Result<Component, Miss> {
        let bytes = match std::fs::read(self.entry(component_sha256)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
            Err(e) => return Err(Miss::Rejected(format!("unreadable: {e}"))),
        };
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Err(Miss::Rejected("not a stowage cache entry".into()));
        };
        if rest.len() < MAC_LEN {
            return Err(Miss::Rejected("truncated".into()));
        }
        let (tag, payload) = rest.split_at(MAC_LEN);
        if self.mac(component_sha256, payload).verify_slice(tag).is_err() {
            return Err(Miss::Rejected("authentication failed (corrupted, or not made by this host)".into()));
        }
        // SAFETY: the payload is authenticated by an HMAC under this host's private cache key
        // and bound to the component's sha256 and this engine's identity: it is exactly what
        // `Component::serialize` produced on this host from verified bytes.
        #[allow(unsafe_code, reason = "loading precompiled code this host produced and authenticated")]
        let loaded = unsafe { Component::deserialize(engine, payload) };
        loaded.map_err(|e| Miss::Rejected(format!("incompatible: {e}")))
    }

    /// Stores `component` (compiled from bytes with `component_sha256`). Best effort: a failure
    /// only costs a compile next time.
    pub fn store(&self, component_sha256: &str, component: &Component) {
        if let Err(e) = self.try_store(component_sha256, component) {
            tracing::warn!(error = %e, "could not store a compiled plugin in the cache");
        }
    }

    /// Like `store`, saying whether it worked.
    fn try_store(&self, component_sha256: &str, component: &Component) -> std::io::Result<()> {
        let payload = component.serialize().map_err(|e| std::io::Error::other(e.to_string()))?;
        let tag = self.mac(component_sha256, &payload).finalize().into_bytes();
        let path = self.entry(component_sha256);
        let mut f = tempfile::NamedTempFile::new_in(&self.dir)?;
        f.write_all(MAGIC)?;
        f.write_all(&tag)?;
        f.write_all(&payload)?;
        f.as_file().sync_all()?;
        f.persist(&path).map(|_| ()).map_err(|e| e.error)
    }
}

/// Refuses a cache directory or key that another user owns or may write (or, for the key,
/// read): whoever can write entries and knows the key could get native code loaded.
fn check_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    // Our own uid, without unsafe code: the owner of a file we create.
    let dir = if meta.is_dir() { path } else { path.parent().unwrap_or(path) };
    let probe = tempfile::NamedTempFile::new_in(dir)?;
    let me = probe.as_file().metadata()?.uid();
    let forbidden = if meta.is_dir() { 0o022 } else { 0o077 };
    if meta.uid() != me || meta.mode() & forbidden != 0 || meta.file_type().is_symlink() {
        return Err(std::io::Error::other(format!(
            "{} must be owned by this user and not writable (or, for the key, readable) by others",
            path.display()
        )));
    }
    Ok(())
}

/// The default cache directory (`$STOWAGE_CACHE_DIR`, `$XDG_CACHE_HOME/stowage` or
/// `~/.cache/stowage`).
pub use stowage_config::default_cache_dir as default_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_tampering_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::PluginEngine::new().unwrap();
        let engine = engine.engine();
        let cache = CompileCache::open(dir.path(), engine).unwrap();
        let bytes = stowage_bundled::get("local-fs").unwrap();
        let sha = hex::encode(Sha256::digest(bytes));
        assert_eq!(cache.load(engine, &sha).err(), Some(Miss::Absent));
        let component = Component::new(engine, bytes).unwrap();
        cache.try_store(&sha, &component).unwrap();
        assert!(cache.load(engine, &sha).is_ok());

        // A flipped byte anywhere in the entry is caught before deserializing.
        let path = cache.entry(&sha);
        let mut entry = std::fs::read(&path).unwrap();
        let mid = entry.len() / 2;
        entry[mid] ^= 1;
        std::fs::write(&path, &entry).unwrap();
        let rejected = |m: Result<_, Miss>| match m {
            Err(Miss::Rejected(why)) => why,
            Err(other) => panic!("expected a rejection, got {other:?}"),
            Ok(_) => panic!("expected a rejection, the entry loaded"),
        };
        assert!(rejected(cache.load(engine, &sha)).starts_with("authentication failed"));

        // A good entry made by another host (another key) is foreign.
        cache.try_store(&sha, &component).unwrap();
        assert!(cache.load(engine, &sha).is_ok(), "stored again, it loads here");
        let other = tempfile::tempdir().unwrap();
        let foreign = CompileCache::open(other.path(), engine).unwrap();
        std::fs::copy(&path, foreign.entry(&sha)).unwrap();
        assert!(rejected(foreign.load(engine, &sha)).starts_with("authentication failed"));
    }
}
