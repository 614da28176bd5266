//! Signed checkpoints: the ledger's tree size and Merkle root at a moment, in the C2SP
//! `tlog-checkpoint` text format, signed with the host's Ed25519 key as a signed note:
//!
//! ```text
//! stowage-ledger
//! 1000
//! <base64 root hash>
//! chain <hex hash of record 999>
//! time <unix seconds>
//!
//! — stowage-ledger <base64 signature>
//! ```
//!
//! A checkpoint saved anywhere else (a second disk, an auditor's copy) anchors the ledger: a
//! later ledger must be an extension of it, which `verify --against` and consistency proofs
//! check. Checkpoints are appended to a local file (one signed note after another) by a
//! thread of their own, off the path of appends.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::merkle::Hash;
use crate::note::{Note, NoteError, SignerKey, VerifierKey, split_notes};

/// One checkpoint's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log (the first line).
    pub origin: String,
    /// Records covered: indices `0..size`.
    pub size: u64,
    /// The Merkle root of those records.
    pub root: Hash,
    /// The chain hash of record `size - 1` (empty for size 0).
    pub chain: String,
    /// When it was made, Unix seconds.
    pub time: u64,
}

impl Checkpoint {
    /// The note text.
    pub fn text(&self) -> String {
        format!("{}\n{}\n{}\nchain {}\ntime {}\n", self.origin, self.size, B64.encode(self.root), self.chain, self.time)
    }

    /// Parses a checkpoint's note text.
    pub fn parse_text(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |what: &str| NoteError::Malformed(format!("checkpoint: {what}"));
        let mut lines = text.lines();
        let origin = lines.next().filter(|l| !l.is_empty()).ok_or_else(|| bad("no origin line"))?.to_string();
        let size = lines
            .next()
            .and_then(|l| l.parse::<u64>().ok())
            .ok_or_else(|| bad("the second line is not a tree size"))?;
        let root: Hash = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("the third line is not a base64 SHA-256 root"))?;
        let mut chain = None;
        let mut time = None;
        for line in lines {
            if let Some(v) = line.strip_prefix("chain ") {
                chain = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("time ") {
                time = v.parse().ok();
            }
        }
        Ok(Checkpoint {
            origin,
            size,
            root,
            chain: chain.ok_or_else(|| bad("no `chain` line"))?,
            time: time.ok_or_else(|| bad("no `time` line"))?,
        })
    }

    /// Signs it.
    pub fn sign(&self, key: &SignerKey) -> Result<String, NoteError> {
        key.sign(&self.text())
    }
}

/// A checkpoint whose signature verified, with its note text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// What it says.
    pub checkpoint: Checkpoint,
    /// The whole signed note.
    pub note: String,
}

/// Every checkpoint in `text` signed by a key of `trusted`, in file order; notes that do not
/// verify are errors naming their position.
pub fn parse_all(text: &str, trusted: &[VerifierKey]) -> Result<Vec<SignedCheckpoint>, NoteError> {
    let mut out = Vec::new();
    for (i, note) in split_notes(text).into_iter().enumerate() {
        let parsed = Note::parse(note).map_err(|e| NoteError::Malformed(format!("checkpoint {}: {e}", i + 1)))?;
        let body = parsed.verify(trusted).map_err(|e| NoteError::Unverified(format!("checkpoint {}: {e}", i + 1)))?;
        out.push(SignedCheckpoint {
            checkpoint: Checkpoint::parse_text(body)?,
            note: format!("{}\n", note.trim_end()),
        });
    }
    Ok(out)
}

/// Reads the checkpoints file at `path` (none if it does not exist).
pub fn read_file(path: &Path, trusted: &[VerifierKey]) -> Result<Vec<SignedCheckpoint>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_all(&text, trusted).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Appends one signed note to the checkpoints file and makes it durable. One `write` per
/// note on a file opened for appending: two processes appending at once never interleave.
pub fn append_file(path: &Path, note: &str) -> std::io::Result<()> {
    let created = !path.exists();
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{note}\n").as_bytes())?;
    file.sync_data()?;
    if created && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// How the ledger makes checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// The log's name (the checkpoint's first line, and the key's name).
    pub origin: String,
    /// A checkpoint after this many new records...
    pub every_records: u64,
    /// ...or once this many seconds have passed since the last one and records were added.
    pub every_secs: u64,
    /// The checkpoints file.
    pub file: PathBuf,
    /// The host's key file (`PRIVATE+KEY+...`); created, mode 0600, if missing.
    pub key_file: PathBuf,
}

/// Reads the host key at `path`, creating it (mode 0600, with the verifier key beside it as
/// `<path>.pub`) if it does not exist.
pub fn load_or_create_key(path: &Path, name: &str) -> Result<SignerKey, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => SignerKey::parse(&text).map_err(|e| format!("host key {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SignerKey::generate(name).map_err(|e| e.to_string())?;
            write_private(path, &format!("{}\n", key.to_text()))
                .map_err(|e| format!("cannot create host key {}: {e}", path.display()))?;
            let public = public_key_path(path);
            std::fs::write(&public, format!("{}\n", key.verifier().to_text()))
                .map_err(|e| format!("cannot write {}: {e}", public.display()))?;
            tracing::info!(key = %path.display(), "created the ledger's host key");
            Ok(key)
        }
        Err(e) => Err(format!("host key {}: {e}", path.display())),
    }
}

/// Where the verifier key of the host key at `key` is written.
pub fn public_key_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// A checkpoint to sign and store (sent by the committer).
pub(crate) struct Due {
    pub(crate) size: u64,
    pub(crate) root: Hash,
    pub(crate) chain: String,
}

/// A checkpoint that is due, with where to answer whoever asked for it (if anyone did).
pub(crate) type DueRequest = (Due, Option<std::sync::mpsc::Sender<Result<SignedCheckpoint, String>>>);

/// The checkpointer thread: signs what the committer sends, appends it to the file, and
/// publishes it.
pub(crate) fn run(
    policy: CheckpointPolicy,
    key: SignerKey,
    due: Receiver<DueRequest>,
    published: tokio::sync::watch::Sender<Option<SignedCheckpoint>>,
) {
    while let Ok((d, reply)) = due.recv() {
        let checkpoint = Checkpoint {
            origin: policy.origin.clone(),
            size: d.size,
            root: d.root,
            chain: d.chain,
            time: crate::now_ms() / 1000,
        };
        let result = checkpoint
            .sign(&key)
            .map_err(|e| e.to_string())
            .and_then(|note| {
                append_file(&policy.file, &note).map(|()| note).map_err(|e| format!("{}: {e}", policy.file.display()))
            })
            .map(|note| SignedCheckpoint { checkpoint, note });
        match &result {
            Ok(signed) => {
                tracing::debug!(size = signed.checkpoint.size, "ledger checkpoint signed");
                published.send_replace(Some(signed.clone()));
            }
            Err(e) => tracing::error!(error = %e, "could not store a ledger checkpoint"),
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_through_its_signed_note_and_a_forged_one_is_refused() {
        let key = SignerKey::generate("stowage-ledger").unwrap();
        let c = Checkpoint {
            origin: "stowage-ledger".into(),
            size: 1000,
            root: [7; 32],
            chain: "ab".repeat(32),
            time: 1_700_000_000,
        };
        let note = c.sign(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("checkpoints");
        append_file(&file, &note).unwrap();
        let forged =
            Checkpoint { size: 999, ..c.clone() }.sign(&SignerKey::generate("stowage-ledger").unwrap()).unwrap();
        let read = read_file(&file, &[key.verifier()]).unwrap();
        assert_eq!(read.iter().map(|s| &s.checkpoint).collect::<Vec<_>>(), vec![&c]);
        append_file(&file, &forged).unwrap();
        let e = read_file(&file, &[key.verifier()]).unwrap_err();
        assert!(e.contains("checkpoint 2") && e.contains("none of them a trusted key"), "{e}");
        assert!(read_file(&dir.path().join("none"), &[key.verifier()]).unwrap().is_empty());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn any_checkpoint() -> impl Strategy<Value = Checkpoint> {
            ("[a-z0-9./-]{1,30}", any::<u64>(), any::<[u8; 32]>(), "[0-9a-f]{64}", any::<u64>())
                .prop_map(|(origin, size, root, chain, time)| Checkpoint { origin, size, root, chain, time })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn a_signed_checkpoint_reads_back_and_any_change_to_it_is_refused(c in any_checkpoint(), at in any::<prop::sample::Index>(), with in "[ -~\n]") {
                let key = SignerKey::generate(&c.origin).unwrap();
                let note = c.sign(&key).unwrap();
                let back = parse_all(&note, &[key.verifier()]).unwrap();
                prop_assert_eq!(back.len(), 1);
                prop_assert_eq!(&back[0].checkpoint, &c);
                // One character replaced (the signature line holds a multi-byte `—`).
                let mut chars: Vec<char> = note.chars().collect();
                let at = at.index(chars.len());
                chars.splice(at..at + 1, with.chars());
                let changed: String = chars.into_iter().collect();
                if changed != note
                    && let Ok(read) = parse_all(&changed, &[key.verifier()])
                {
                    prop_assert!(read.iter().all(|r| r.checkpoint == c), "a changed note verified as another checkpoint:\n{changed}");
                }
            }

            #[test]
            fn any_text_is_a_checkpoint_or_an_error(text in "[ -~\n\u{2014}]{0,300}") {
                let _ = Checkpoint::parse_text(&text);
                let key = SignerKey::generate("origin").unwrap();
                let _ = parse_all(&text, &[key.verifier()]);
            }
        }
    }
}
