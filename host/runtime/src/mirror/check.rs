//! Every copy of one object read and checked: what `fsck` does on a mirrored disk.

use std::sync::Arc;

use super::core::Mirror;
use super::reader::MirrorReader;
use crate::error::StorageError;
use crate::types::{ObjectInfo, RequestContext};

/// What [`Mirror::check_copies`] found of one object.
pub(crate) struct Copies {
    /// The newest version's info.
    pub info: ObjectInfo,
    /// The sha256 of the first good copy's bytes, as the host measured them.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// Bytes read of every copy together.
    pub bytes_read: u64,
    /// (member, why) of each copy that is damaged, missing or behind (each marked).
    pub bad: Vec<(String, String)>,
}

impl Mirror {
    /// Reads every member's copy of `path` to its end, each block checked against its digest,
    /// and marks every member whose copy is damaged, lacks its block digests, or is missing or
    /// behind. Fails if no copy reads back good.
    pub(crate) async fn check_copies(
        self: &Arc<Self>,
        ctx: &RequestContext,
        path: &str,
    ) -> Result<Copies, StorageError> {
        let survey = self.survey(ctx, path).await?;
        let Some(info) = survey.newest.clone() else { return Err(StorageError::NotFound(path.to_string())) };
        let mut bad = Vec::new();
        for &b in &survey.behind {
            self.mark(ctx, b, path, "put", &survey.version).await;
            bad.push((self.members[b].name().to_string(), "holds an older version, or none".to_string()));
        }
        let (mut good, mut bytes_read) = (None, 0);
        for &h in &survey.holders {
            let mut digester = crate::driver::Digester::new();
            let read: Result<(), StorageError> = async {
                // A copy that cannot even be opened (no digests, and bytes that do not match
                // the recorded sha256) is as bad as one that reads wrong.
                let mut reader = MirrorReader::from_survey(self.clone(), ctx, path, &survey, &[h], None).await?;
                if !reader.digests_kept() {
                    return Err(StorageError::Io("its block digests are missing or damaged".into()));
                }
                while let Some(chunk) = reader.next_chunk(crate::driver::MAX_CHUNK).await? {
                    bytes_read += chunk.len() as u64;
                    digester.update(chunk);
                }
                Ok(())
            }
            .await;
            match (read, digester.finish()) {
                (Ok(()), Some(d)) => {
                    good.get_or_insert(d);
                }
                (Ok(()), None) => return Err(StorageError::Io("the host's hashing thread stopped".into())),
                (Err(e), _) => {
                    // A damaged block was marked by the read; missing digests are marked here.
                    self.mark(ctx, h, path, "put", &survey.version).await;
                    bad.push((self.members[h].name().to_string(), e.to_string()));
                }
            }
        }
        let Some(digest) = good else {
            return Err(StorageError::Io(format!("no mirror holds a copy of `{path}` that matches its digests")));
        };
        Ok(Copies { info, sha256: digest.sha256, size: digest.size, bytes_read, bad })
    }
}
