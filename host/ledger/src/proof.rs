//! Inclusion proofs a compliance officer can check offline: one record (its index, time and
//! body, exactly as hashed), the audit path to a signed checkpoint's root, and that checkpoint.
//! `check_proof` needs nothing but the proof and the host's public key: no database.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::merkle::{self, Hash};
use crate::note::{Note, VerifierKey};
use crate::store::Stored;
use crate::{Entry, Ledger, LedgerError, Record};

/// A record and the proof that it is in a signed checkpoint's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The record's index (its leaf).
    pub index: u64,
    /// Its time, ms since the Unix epoch.
    pub at_ms: u64,
    /// Its body, exactly as stored and hashed.
    pub body: String,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The audit path, hex, leaf to root.
    pub path: Vec<String>,
    /// The signed checkpoint (a signed note).
    pub checkpoint: String,
}

impl Ledger {
    /// A proof that record `index` is in the newest checkpoint covering it (signing a new
    /// checkpoint first if none does yet).
    pub fn prove(&self, index: u64) -> Result<InclusionProof, LedgerError> {
        let mut covering: Option<SignedCheckpoint> =
            self.checkpoints()?.into_iter().filter(|c| c.checkpoint.size > index).max_by_key(|c| c.checkpoint.size);
        if covering.is_none() {
            if index >= self.len()? {
                return Err(LedgerError::Record { index, error: "no such record".into() });
            }
            covering = Some(self.checkpoint_now()?);
        }
        let Some(signed) = covering else {
            return Err(LedgerError::Checkpoint("no checkpoint covers this record".into()));
        };
        let conn = self.conn()?;
        let (at_ms, body) =
            conn.row(index)?.ok_or_else(|| LedgerError::Record { index, error: "no such record".into() })?;
        let path = merkle::inclusion_proof(&Stored(&**conn), index, signed.checkpoint.size)?;
        Ok(InclusionProof {
            index,
            at_ms,
            body,
            tree_size: signed.checkpoint.size,
            path: path.iter().map(hex::encode).collect(),
            checkpoint: signed.note,
        })
    }
}

/// Checks `proof` against keys `trusted`: the checkpoint's signature, then the record's path
/// to its root. Returns the record and the checkpoint.
pub fn check_proof(proof: &InclusionProof, trusted: &[VerifierKey]) -> Result<(Entry, Checkpoint), String> {
    let note = Note::parse(&proof.checkpoint).map_err(|e| format!("the proof's checkpoint: {e}"))?;
    let text = note.verify(trusted).map_err(|e| format!("the proof's checkpoint: {e}"))?;
    let checkpoint = Checkpoint::parse_text(text).map_err(|e| e.to_string())?;
    if checkpoint.size != proof.tree_size {
        return Err(format!(
            "the proof is for a tree of {} records, its checkpoint covers {}",
            proof.tree_size, checkpoint.size
        ));
    }
    let path: Vec<Hash> = proof
        .path
        .iter()
        .map(|h| hex::decode(h).ok().and_then(|b| b.try_into().ok()))
        .collect::<Option<_>>()
        .ok_or("the audit path holds something that is not a SHA-256 hash")?;
    let leaf = merkle::leaf_hash(&merkle::leaf_data(proof.index, proof.at_ms, &proof.body));
    if !merkle::verify_inclusion(&leaf, proof.index, checkpoint.size, &path, &checkpoint.root) {
        return Err(format!(
            "record {} (as given) is not in the tree of the checkpoint of size {}: the record or its proof was changed",
            proof.index, checkpoint.size
        ));
    }
    let record: Record =
        serde_json::from_str(&proof.body).map_err(|e| format!("the record's body is not a ledger record: {e}"))?;
    Ok((Entry { index: proof.index, at_ms: proof.at_ms, record }, checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{record, with_checkpoints};

    #[test]
    fn a_proof_checks_offline_and_fails_after_any_edit_of_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite"), with_checkpoints(dir.path(), 1000)).unwrap();
        for i in 0..13 {
            l.append_blocking(&record("file_created", &format!("f{i}"))).unwrap();
        }
        let key = l.verifier_key().unwrap().clone();
        let proof = l.prove(6).unwrap();
        assert_eq!(proof.tree_size, 13);
        let (entry, checkpoint) = check_proof(&proof, std::slice::from_ref(&key)).unwrap();
        assert_eq!((entry.record.path.as_str(), checkpoint.size), ("f6", 13));
        let edited = InclusionProof { body: proof.body.replace("f6", "f7"), ..proof.clone() };
        assert!(check_proof(&edited, std::slice::from_ref(&key)).unwrap_err().contains("was changed"));
        let moved = InclusionProof { index: 7, ..proof.clone() };
        assert!(check_proof(&moved, std::slice::from_ref(&key)).is_err());
        let other = crate::note::SignerKey::generate("test-ledger").unwrap().verifier();
        assert!(check_proof(&proof, &[other]).unwrap_err().contains("none of them a trusted key"));
        // An existing checkpoint is reused while it covers the record.
        assert_eq!(l.prove(2).unwrap().checkpoint, proof.checkpoint);
    }
}
