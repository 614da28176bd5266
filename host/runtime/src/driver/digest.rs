//! Size and sha256 of a stream, measured by the host while the bytes go to the driver.
//!
//! Small objects are hashed inline. Past [`PARALLEL_AFTER`] bytes the hashing moves to its own
//! thread, fed by reference-counted chunks (no copies), so hashing and writing overlap: a large
//! write costs max(hash, write) instead of their sum.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use sha2_resumable::digest::common::hazmat::{SerializableState, SerializedState};
use sha2_resumable::{Digest as _, Sha256};

/// Bytes after which hashing moves to a background thread.
pub const PARALLEL_AFTER: u64 = 4 << 20;

/// Chunks queued for the hashing thread before the writer waits for it.
const QUEUE: usize = 16;

/// What the host measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Bytes seen.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// Where a digester stood, for a write suspended here and resumed elsewhere (an upload
/// session's next request on another host): bytes seen, and the sha256's internal state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestState {
    /// Bytes seen.
    pub size: u64,
    /// `sha256-v1:` and the hex of the hasher's serialized state (sha2 0.11's layout: its
    /// chaining value, block count and buffered bytes).
    pub sha256: String,
}

/// The prefix of [`DigestState::sha256`]: another layout gets another prefix.
const STATE_FORMAT: &str = "sha256-v1:";

/// The hashes of a stream: of all of it, or of each block of `block` bytes.
#[derive(Clone)]
struct Hashes {
    whole: Option<Sha256>,
    blocks: Option<Box<Blocks>>,
}

/// The BLAKE3 digest of each `size`-byte block of a stream (the last may be shorter): what a
/// mirror's reads check each block against. BLAKE3, not sha256, because it is checked on every
/// read and costs a fraction of sha256 per byte; it is as strong, and the whole object's sha256
/// stays what is recorded.
#[derive(Clone)]
struct Blocks {
    size: u64,
    current: blake3::Hasher,
    in_current: u64,
    done: Vec<[u8; 32]>,
}

impl Hashes {
    fn update(&mut self, mut chunk: &[u8]) {
        if let Some(whole) = &mut self.whole {
            whole.update(chunk);
        }
        let Some(b) = &mut self.blocks else { return };
        while !chunk.is_empty() {
            let take = ((b.size - b.in_current) as usize).min(chunk.len());
            b.current.update(&chunk[..take]);
            b.in_current += take as u64;
            chunk = &chunk[take..];
            if b.in_current == b.size {
                b.done.push(*b.current.finalize().as_bytes());
                b.current.reset();
                b.in_current = 0;
            }
        }
    }

    fn finish(self) -> (Option<String>, Vec<[u8; 32]>) {
        let blocks = match self.blocks {
            Some(b) => {
                let mut b = *b;
                if b.in_current > 0 {
                    b.done.push(*b.current.finalize().as_bytes());
                }
                b.done
            }
            None => Vec::new(),
        };
        (self.whole.map(|w| hex::encode(w.finalize())), blocks)
    }
}

enum State {
    Inline(Hashes),
    Threaded {
        tx: SyncSender<Bytes>,
        thread: JoinHandle<Hashes>,
    },
    /// The hashing thread died: no digest can be trusted.
    Broken,
    /// Counting bytes only: somebody else measures the sha256 (a mirror, of all its copies).
    Counting,
}

/// Measures a stream of chunks.
pub struct Digester {
    size: u64,
    state: State,
    /// The block digests, measured apart (on a thread of their own past [`PARALLEL_AFTER`]).
    blocks: Option<Box<Digester>>,
}

impl Default for Digester {
    fn default() -> Self {
        Self::new()
    }
}

impl Digester {
    /// A digester that has seen nothing.
    pub fn new() -> Self {
        Digester { size: 0, state: State::Inline(Hashes { whole: Some(Sha256::new()), blocks: None }), blocks: None }
    }

    /// A digester that also measures the BLAKE3 digest of each `block`-byte block, on a thread
    /// of its own (see [`Digester::finish_blocks`]).
    pub fn with_blocks(block: u64) -> Self {
        let blocks = Blocks { size: block.max(1), current: blake3::Hasher::new(), in_current: 0, done: Vec::new() };
        let hashes = Hashes { whole: None, blocks: Some(Box::new(blocks)) };
        let blocks = Digester { size: 0, state: State::Inline(hashes), blocks: None };
        Digester { blocks: Some(Box::new(blocks)), ..Digester::new() }
    }

    /// A digester that counts bytes and measures no sha256 ([`Digester::finish`] is `None`).
    pub fn counting() -> Self {
        Digester { size: 0, state: State::Counting, blocks: None }
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a chunk. Past [`PARALLEL_AFTER`] bytes this may wait for the hashing thread to
    /// catch up (bounded queue): hashing is back-pressure like the write itself.
    pub fn update(&mut self, chunk: Bytes) {
        if let Some(blocks) = &mut self.blocks {
            blocks.update(chunk.clone());
        }
        self.size += chunk.len() as u64;
        if matches!(self.state, State::Counting) {
            return;
        }
        if self.size > PARALLEL_AFTER
            && let State::Inline(hasher) = &self.state
        {
            self.state = spawn(hasher.clone());
        }
        match &mut self.state {
            State::Inline(hasher) => hasher.update(&chunk),
            State::Threaded { tx, .. } => {
                if tx.send(chunk).is_err() {
                    self.state = State::Broken;
                }
            }
            State::Broken | State::Counting => {}
        }
    }

    /// Where this digester stands (waiting for the hashing thread to catch up); `None` if it
    /// measures no sha256 of its own or block digests (a mirror's), or its thread died.
    pub fn snapshot(&mut self) -> Option<DigestState> {
        if self.blocks.is_some() {
            return None;
        }
        let hashes = match std::mem::replace(&mut self.state, State::Broken) {
            State::Inline(hashes) => hashes,
            State::Threaded { tx, thread } => {
                drop(tx);
                thread.join().ok()?
            }
            other @ State::Counting => {
                self.state = other;
                return None;
            }
            State::Broken => return None,
        };
        let whole = hashes.whole.as_ref()?;
        let state =
            DigestState { size: self.size, sha256: format!("{STATE_FORMAT}{}", hex::encode(whole.serialize())) };
        // Hashing goes on inline; past `PARALLEL_AFTER` the next chunk moves it to a thread again.
        self.state = State::Inline(hashes);
        Some(state)
    }

    /// A digester that continues from `state`; why not, if the state is not one this host
    /// wrote.
    pub fn resume(state: &DigestState) -> Result<Digester, String> {
        let bad = |what: &str| format!("a suspended write's sha256 state {what}");
        let hex_state = state.sha256.strip_prefix(STATE_FORMAT).ok_or_else(|| bad("has an unknown format"))?;
        let bytes = hex::decode(hex_state).map_err(|_| bad("is not hex"))?;
        let serialized =
            SerializedState::<Sha256>::try_from(bytes.as_slice()).map_err(|_| bad("has the wrong length"))?;
        let whole = Sha256::deserialize(&serialized).map_err(|_| bad("does not parse"))?;
        Ok(Digester {
            size: state.size,
            state: State::Inline(Hashes { whole: Some(whole), blocks: None }),
            blocks: None,
        })
    }

    /// The size and sha256 of everything seen; `None` if the hashing thread died.
    pub fn finish(&mut self) -> Option<Digest> {
        self.finish_blocks().map(|(digest, _)| digest)
    }

    /// Like [`Digester::finish`], with the sha256 of each block (empty unless made
    /// [`Digester::with_blocks`]).
    pub fn finish_blocks(&mut self) -> Option<(Digest, Vec<[u8; 32]>)> {
        let hashes = self.finish_hashes()?;
        let (sha256, _) = hashes;
        let blocks = match self.blocks.take() {
            Some(mut b) => b.finish_hashes()?.1,
            None => Vec::new(),
        };
        Some((Digest { size: self.size, sha256: sha256? }, blocks))
    }
}

impl Digester {
    /// What this digester's own hashes measured (the whole stream's sha256, or the blocks').
    fn finish_hashes(&mut self) -> Option<(Option<String>, Vec<[u8; 32]>)> {
        let hashes = match std::mem::replace(&mut self.state, State::Broken) {
            State::Inline(hashes) => hashes,
            State::Threaded { tx, thread } => {
                drop(tx);
                thread.join().ok()?
            }
            State::Broken | State::Counting => return None,
        };
        Some(hashes.finish())
    }
}

/// Moves hashing to its own thread; stays inline if no thread can be had.
fn spawn(hasher: Hashes) -> State {
    let (tx, rx) = sync_channel::<Bytes>(QUEUE);
    let fallback = hasher.clone();
    let spawned = std::thread::Builder::new().name("stowage-digest".into()).spawn(move || {
        let mut hasher = hasher;
        for chunk in rx {
            hasher.update(&chunk);
        }
        hasher
    });
    match spawned {
        Ok(thread) => State::Threaded { tx, thread },
        Err(_) => State::Inline(fallback),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn inline_and_threaded_agree_with_one_shot_sha256() {
        let data: Vec<u8> = (0..(PARALLEL_AFTER as usize * 3 + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        for chunk in [4093usize, 1 << 20, 3 << 20] {
            let mut d = Digester::new();
            for piece in data.chunks(chunk) {
                d.update(Bytes::copy_from_slice(piece));
            }
            let got = d.finish().unwrap();
            assert_eq!(got.size, data.len() as u64);
            assert_eq!(got.sha256, reference(&data), "chunk size {chunk}");
        }
    }

    #[test]
    fn block_digests_are_each_blocks_sha256_however_the_stream_is_cut() {
        let block = 1 << 20;
        let data: Vec<u8> = (0..(PARALLEL_AFTER as usize * 2 + 777)).map(|i| (i * 13 % 251) as u8).collect();
        let want: Vec<[u8; 32]> = data.chunks(block).map(|b| *blake3::hash(b).as_bytes()).collect();
        for chunk in [1000usize, block, block + 1, 3 << 20] {
            let mut d = Digester::with_blocks(block as u64);
            for piece in data.chunks(chunk) {
                d.update(Bytes::copy_from_slice(piece));
            }
            let (digest, blocks) = d.finish_blocks().unwrap();
            assert_eq!(digest.sha256, reference(&data), "chunk size {chunk}");
            assert_eq!(blocks, want, "chunk size {chunk}");
        }
    }

    #[test]
    fn a_snapshot_resumed_elsewhere_gives_the_whole_streams_sha256() {
        let data: Vec<u8> = (0..(PARALLEL_AFTER as usize * 2 + 999)).map(|i| (i * 31 % 253) as u8).collect();
        // Cut inline, mid-block, and after hashing moved to its thread.
        for cut in [0usize, 1, 63, 64, 100_000, PARALLEL_AFTER as usize + 12_345] {
            let mut first = Digester::new();
            for piece in data[..cut].chunks(1 << 20) {
                first.update(Bytes::copy_from_slice(piece));
            }
            let state = first.snapshot().unwrap();
            assert_eq!(state.size, cut as u64);
            // The first goes on too: a snapshot does not disturb it.
            first.update(Bytes::copy_from_slice(&data[cut..]));
            let mut second = Digester::resume(&state).unwrap();
            for piece in data[cut..].chunks(777_777) {
                second.update(Bytes::copy_from_slice(piece));
            }
            let (a, b) = (first.finish().unwrap(), second.finish().unwrap());
            assert_eq!(a.sha256, reference(&data), "cut at {cut}");
            assert_eq!(b, a, "cut at {cut}");
        }
    }

    #[test]
    fn a_state_that_is_not_ours_is_refused() {
        let state = Digester::new().snapshot().unwrap();
        for (sha256, why) in [
            ("sha256-v2:00".to_string(), "unknown format"),
            ("sha256-v1:zz".to_string(), "not hex"),
            (format!("{}00", state.sha256), "wrong length"),
        ] {
            let err = Digester::resume(&DigestState { size: 0, sha256 }).err().unwrap();
            assert!(err.contains(why), "{err}");
        }
        assert!(Digester::counting().snapshot().is_none());
        assert!(Digester::with_blocks(1024).snapshot().is_none());
    }

    #[test]
    fn empty_stream_has_the_empty_hash() {
        let got = Digester::new().finish().unwrap();
        assert_eq!(got.size, 0);
        assert_eq!(got.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
