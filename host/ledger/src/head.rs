//! The ledger's head file: the record count and the hash of the last record, kept beside the
//! database so that removing records from the tail (which leaves a valid chain) is detected.
//!
//! The file holds two fixed-size slots in separate 4 KiB blocks, each `count hash check`
//! where `check` is a sha256 prefix of the rest. Writes go to the slot not holding the
//! newest head, in place (no new inode, no rename); readers take the newest valid slot. A
//! write torn by a crash damages at most the slot being written, so the other still names a
//! head the database reaches.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const SLOT_BYTES: usize = 160;
const SLOT_OFFSETS: [u64; 2] = [0, 4096];
const MAGIC: &str = "stowage-ledger-head/1";

/// A head: how many records the ledger holds and the hash of the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) count: u64,
    pub(crate) hash: String,
}

/// What the head file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadState {
    /// No file: a new ledger.
    Missing,
    /// A file, but no slot in it is valid.
    Damaged,
    /// The newest valid head.
    At(Head),
    /// A head in the one-line format of earlier versions (accepted only until the ledger has
    /// checkpoints; replaced by the next write).
    Legacy(Head),
}

impl HeadState {
    /// The head it names, in either format.
    pub(crate) fn head(&self) -> Option<&Head> {
        match self {
            HeadState::At(h) | HeadState::Legacy(h) => Some(h),
            HeadState::Missing | HeadState::Damaged => None,
        }
    }
}

fn check(count: u64, hash: &str) -> String {
    let digest = Sha256::digest(format!("{MAGIC} {count} {hash}").as_bytes());
    hex::encode(&digest[..8])
}

fn encode(head: &Head) -> [u8; SLOT_BYTES] {
    let line = format!("{MAGIC} {} {} {}\n", head.count, head.hash, check(head.count, &head.hash));
    let mut slot = [b' '; SLOT_BYTES];
    slot[..line.len()].copy_from_slice(line.as_bytes());
    slot
}

fn decode(slot: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(slot).ok()?;
    let mut parts = text.split_whitespace();
    if parts.next()? != MAGIC {
        return None;
    }
    let count = parts.next()?.parse::<u64>().ok()?;
    let hash = parts.next().filter(|h| h.len() == 64)?.to_string();
    (parts.next()? == check(count, &hash)).then_some(Head { count, hash })
}

/// Reads the head file at `path`.
pub(crate) fn read(path: &Path) -> std::io::Result<HeadState> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HeadState::Missing),
        Err(e) => Err(e),
    }
}

/// What the head file's `bytes` say.
pub(crate) fn parse(bytes: &[u8]) -> HeadState {
    let newest = SLOT_OFFSETS
        .iter()
        .filter_map(|&at| bytes.get(at as usize..at as usize + SLOT_BYTES).and_then(decode))
        .max_by_key(|h| h.count);
    match (newest, legacy(bytes)) {
        (Some(head), _) => HeadState::At(head),
        (None, Some(head)) => HeadState::Legacy(head),
        (None, None) => HeadState::Damaged,
    }
}

/// The head as earlier versions wrote it (`count hash`, one line, replaced by rename); the
/// first slot write replaces it.
fn legacy(bytes: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.split_whitespace();
    let count = parts.next()?.parse::<u64>().ok()?;
    let hash = parts.next().filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))?.to_string();
    parts.next().is_none().then_some(Head { count, hash })
}

/// The open head file, written by the ledger's committer only.
pub(crate) struct HeadFile {
    path: PathBuf,
    file: Option<File>,
    next_slot: usize,
    /// Makes writes durable off the committer's thread (`sync_later`).
    syncer: Option<Syncer>,
}

/// A thread that fsyncs the head file when asked, so the committer's next transaction runs
/// while the last head write becomes durable. At most one sync is outstanding: a slot is
/// written only once the other slot's last write is durable, so a crash can tear only the
/// slot being written (the invariant in this module's documentation).
struct Syncer {
    ask: Option<std::sync::mpsc::SyncSender<()>>,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
    pending: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn spawn(file: File) -> std::io::Result<Syncer> {
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let (answer, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("stowage-ledger-head".into()).spawn(move || {
            while asked.recv().is_ok() {
                if answer.send(file.sync_data()).is_err() {
                    return;
                }
            }
        })?;
        Ok(Syncer { ask: Some(ask), done, pending: false, thread: Some(thread) })
    }

    /// Waits for the outstanding sync, if any; its error, if it failed.
    fn wait(&mut self) -> std::io::Result<()> {
        if !std::mem::take(&mut self.pending) {
            return Ok(());
        }
        self.done.recv().unwrap_or_else(|_| Err(std::io::Error::other("the head file's sync thread stopped")))
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        if let Err(e) = self.wait() {
            tracing::error!(error = %e, "ledger head file could not be synced");
        }
        drop(self.ask.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl HeadFile {
    /// The head file at `path`; `current` is what it holds now (its slot is not overwritten
    /// next).
    pub(crate) fn new(path: &Path, current: &HeadState) -> HeadFile {
        let next_slot = match current {
            HeadState::At(head) | HeadState::Legacy(head) => {
                let bytes = std::fs::read(path).unwrap_or_default();
                let holds = |i: usize| {
                    let at = SLOT_OFFSETS[i] as usize;
                    bytes.get(at..at + SLOT_BYTES).and_then(decode).as_ref() == Some(head)
                };
                if holds(0) { 1 } else { 0 }
            }
            _ => 0,
        };
        HeadFile { path: path.to_path_buf(), file: None, next_slot, syncer: None }
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `head` into the spare slot; visible to readers at once, durable after `sync`.
    pub(crate) fn write(&mut self, head: &Head) -> std::io::Result<()> {
        // The other slot's last write must be durable before this one may tear.
        if let Some(syncer) = &mut self.syncer {
            syncer.wait()?;
        }
        let file = match &mut self.file {
            Some(file) => file,
            slot @ None => {
                let created = !self.path.exists();
                let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&self.path)?;
                if created {
                    // A new file's directory entry must survive a crash too.
                    file.sync_all()?;
                    if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        File::open(dir)?.sync_all()?;
                    }
                }
                slot.insert(file)
            }
        };
        file.write_all_at(&encode(head), SLOT_OFFSETS[self.next_slot])?;
        self.next_slot ^= 1;
        Ok(())
    }

    /// Makes the last write durable.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if let Some(syncer) = &mut self.syncer {
            syncer.wait()?;
        }
        match &self.file {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }

    /// Starts making the last write durable and returns at once; the next `write` or `sync`
    /// waits for it (and reports its failure).
    pub(crate) fn sync_later(&mut self) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let syncer = match &mut self.syncer {
            Some(syncer) => syncer,
            slot @ None => slot.insert(Syncer::spawn(file.try_clone()?)?),
        };
        syncer.wait()?;
        match syncer.ask.as_ref().map(|ask| ask.send(())) {
            Some(Ok(())) => {
                syncer.pending = true;
                Ok(())
            }
            _ => file.sync_data(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(count: u64) -> Head {
        Head { count, hash: format!("{count:064x}") }
    }

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.head");
        assert_eq!(read(&path).unwrap(), HeadState::Missing);
        let mut file = HeadFile::new(&path, &HeadState::Missing);
        for n in 1..=3 {
            file.write(&head(n)).unwrap();
            assert_eq!(read(&path).unwrap(), HeadState::At(head(n)));
        }
        file.sync().unwrap();
        // Tear the newest slot (3 went to slot 0): the previous head is still there.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"garbage", SLOT_OFFSETS[0] + 30).unwrap();
        assert_eq!(read(&path).unwrap(), HeadState::At(head(2)));
        // Reopened, the writer keeps the valid slot and overwrites the torn one.
        let mut file = HeadFile::new(&path, &read(&path).unwrap());
        file.write(&head(4)).unwrap();
        f.write_all_at(b"garbage", SLOT_OFFSETS[1] + 30).unwrap();
        assert_eq!(read(&path).unwrap(), HeadState::At(head(4)));
        std::fs::write(&path, "").unwrap();
        assert_eq!(read(&path).unwrap(), HeadState::Damaged);
    }

    #[test]
    fn a_head_written_by_an_earlier_version_is_read_and_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.head");
        std::fs::write(&path, format!("7 {}\n", head(7).hash)).unwrap();
        let state = read(&path).unwrap();
        assert_eq!(state, HeadState::Legacy(head(7)));
        let mut file = HeadFile::new(&path, &state);
        file.write(&head(8)).unwrap();
        assert_eq!(read(&path).unwrap(), HeadState::At(head(8)));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn any_head() -> impl Strategy<Value = Head> {
            (any::<u64>(), "[0-9a-f]{64}").prop_map(|(count, hash)| Head { count, hash })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn a_slot_reads_back_as_written(h in any_head()) {
                prop_assert_eq!(decode(&encode(&h)), Some(h));
            }

            #[test]
            fn a_damaged_slot_reads_as_nothing_never_as_another_head(h in any_head(), at in 0usize..SLOT_BYTES, byte in any::<u8>()) {
                let mut slot = encode(&h);
                slot[at] = byte;
                let got = decode(&slot);
                prop_assert!(got.is_none() || got.as_ref() == Some(&h), "{got:?}");
            }

            #[test]
            fn any_file_reads_as_some_state(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("l.head");
                std::fs::write(&path, &bytes).unwrap();
                let state = read(&path).unwrap();
                prop_assert_ne!(state, HeadState::Missing);
            }

            #[test]
            fn with_one_slot_torn_the_other_is_read(older in any_head(), newer in any_head(), garbage in proptest::collection::vec(any::<u8>(), 1..SLOT_BYTES), tear_newer in any::<bool>()) {
                prop_assume!(older.count < newer.count);
                let mut file = vec![b' '; 4096 + SLOT_BYTES];
                file[..SLOT_BYTES].copy_from_slice(&encode(&older));
                file[4096..].copy_from_slice(&encode(&newer));
                let (torn, kept) = if tear_newer { (4096, &older) } else { (0, &newer) };
                file[torn..torn + garbage.len()].copy_from_slice(&garbage);
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("l.head");
                std::fs::write(&path, &file).unwrap();
                let state = read(&path).unwrap();
                // The torn slot is gone unless the garbage left it intact (then the newest wins).
                let newest = if decode(&file[torn..torn + SLOT_BYTES]).is_some() { &newer } else { kept };
                prop_assert_eq!(state, HeadState::At(newest.clone()));
            }
        }
    }
}
