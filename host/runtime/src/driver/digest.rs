//! Size and sha256 of a stream, measured by the host while the bytes go to the driver.
//!
//! Small objects are hashed inline. Past [`PARALLEL_AFTER`] bytes the hashing moves to its own
//! thread, fed by reference-counted chunks (no copies), so hashing and writing overlap: a large
//! write costs max(hash, write) instead of their sum.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

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

enum State {
    Inline(Sha256),
    Threaded {
        tx: SyncSender<Bytes>,
        thread: JoinHandle<Sha256>,
    },
    /// The hashing thread died: no digest can be trusted.
    Broken,
}

/// Measures a stream of chunks.
pub struct Digester {
    size: u64,
    state: State,
}

impl Default for Digester {
    fn default() -> Self {
        Self::new()
    }
}

impl Digester {
    /// A digester that has seen nothing.
    pub fn new() -> Self {
        Digester { size: 0, state: State::Inline(Sha256::new()) }
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a chunk. Past [`PARALLEL_AFTER`] bytes this may wait for the hashing thread to
    /// catch up (bounded queue): hashing is back-pressure like the write itself.
    pub fn update(&mut self, chunk: Bytes) {
        self.size += chunk.len() as u64;
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
            State::Broken => {}
        }
    }

    /// The size and sha256 of everything seen; `None` if the hashing thread died.
    pub fn finish(&mut self) -> Option<Digest> {
        let hasher = match std::mem::replace(&mut self.state, State::Broken) {
            State::Inline(hasher) => hasher,
            State::Threaded { tx, thread } => {
                drop(tx);
                thread.join().ok()?
            }
            State::Broken => return None,
        };
        Some(Digest { size: self.size, sha256: hex::encode(hasher.finalize()) })
    }
}

/// Moves hashing to its own thread; stays inline if no thread can be had.
fn spawn(hasher: Sha256) -> State {
    let (tx, rx) = sync_channel::<Bytes>(QUEUE);
    let fallback = hasher.clone();
    let spawned = std::thread::Builder::new().name("stowage-sha256".into()).spawn(move || {
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
    fn empty_stream_has_the_empty_hash() {
        let got = Digester::new().finish().unwrap();
        assert_eq!(got.size, 0);
        assert_eq!(got.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
