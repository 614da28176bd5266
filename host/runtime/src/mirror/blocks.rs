//! An object's block digests, kept beside it on each member (`stowage-blocks/<path>`): what
//! lets a read check each 1 MiB block before it goes out, and so move to another member in
//! the middle of an object. Each is the block's BLAKE3 digest (cryptographic like sha256, and
//! several times cheaper per byte: every read checks every block). A small text file:
//!
//! ```text
//! stowage-blocks 1 blake3
//! version <the copy's version>
//! size <bytes>
//! sha256 <the object's sha256>
//! block <block size>
//! <BLAKE3 of block 0>
//! ...
//! check <sha256 of every line above>
//! ```
//!
//! It names the version, size and sha256 of the object it describes, so a stale one (of an
//! earlier version) is never taken for the current, and ends with its own digest, so a damaged
//! one is never believed. An object of one block or none keeps no file: its recorded sha256
//! checks its one block.

use sha2::{Digest as _, Sha256};

/// How a read checks each block of the version it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockDigests {
    /// An object of one block: its recorded sha256.
    Whole([u8; 32]),
    /// The BLAKE3 digest of each block, from the file beside the copy (or measured).
    Blake3(Vec<[u8; 32]>),
}

impl BlockDigests {
    /// The digests of an object of one block or none, from its recorded sha256.
    pub(crate) fn of_small(size: u64, sha256: &str) -> Option<BlockDigests> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(sha256, &mut digest).ok()?;
        Some(if size == 0 { BlockDigests::Blake3(Vec::new()) } else { BlockDigests::Whole(digest) })
    }

    /// Whether block `k` is `block`.
    pub(crate) fn matches(&self, k: u64, block: &[u8]) -> bool {
        match self {
            BlockDigests::Whole(d) => k == 0 && Sha256::digest(block).as_slice() == d,
            BlockDigests::Blake3(all) => {
                usize::try_from(k).ok().and_then(|k| all.get(k)).is_some_and(|d| blake3::hash(block).as_bytes() == d)
            }
        }
    }
}

/// The block size: what a read checks before sending, and moves on by.
pub(crate) const BLOCK: u64 = 1 << 20;

/// The block digests of one version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub version: String,
    pub size: u64,
    pub sha256: String,
    pub blocks: Vec<[u8; 32]>,
}

impl Manifest {
    /// Whether an object of `size` bytes needs its digests kept beside it.
    pub(crate) fn kept_for(size: u64) -> bool {
        size > BLOCK
    }

    /// The file.
    pub(crate) fn encode(&self) -> String {
        let mut text = format!(
            "stowage-blocks 1 blake3\nversion {}\nsize {}\nsha256 {}\nblock {BLOCK}\n",
            self.version, self.size, self.sha256
        );
        for b in &self.blocks {
            text.push_str(&hex::encode(b));
            text.push('\n');
        }
        let check = hex::encode(Sha256::digest(text.as_bytes()));
        text.push_str(&format!("check {check}\n"));
        text
    }

    /// Reads a file written by [`Manifest::encode`]; `None` if it is damaged or of another
    /// format.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Manifest> {
        let text = std::str::from_utf8(bytes).ok()?;
        let body_end = text.rfind("check ")?;
        let (body, check) = text.split_at(body_end);
        let check = check.strip_prefix("check ")?.trim_end();
        if hex::encode(Sha256::digest(body.as_bytes())) != check {
            return None;
        }
        let mut lines = body.lines();
        (lines.next()? == "stowage-blocks 1 blake3").then_some(())?;
        let version = lines.next()?.strip_prefix("version ")?.to_string();
        let size: u64 = lines.next()?.strip_prefix("size ")?.parse().ok()?;
        let sha256 = lines.next()?.strip_prefix("sha256 ")?.to_string();
        (lines.next()?.strip_prefix("block ")?.parse::<u64>().ok()? == BLOCK).then_some(())?;
        let blocks = lines
            .map(|l| {
                let mut b = [0u8; 32];
                hex::decode_to_slice(l, &mut b).ok().map(|()| b)
            })
            .collect::<Option<Vec<_>>>()?;
        (blocks.len() as u64 == size.div_ceil(BLOCK)).then_some(())?;
        Some(Manifest { version, size, sha256, blocks })
    }

    /// Whether these are the digests of the copy described by `version`, `size`, `sha256`.
    pub(crate) fn describes(&self, version: &str, size: u64, sha256: Option<&str>) -> bool {
        self.version == version && self.size == size && sha256 == Some(self.sha256.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            version: "0001700000000000-req".into(),
            size: BLOCK * 2 + 5,
            sha256: "ab".repeat(32),
            blocks: vec![[1; 32], [2; 32], [3; 32]],
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = sample();
        assert_eq!(Manifest::decode(m.encode().as_bytes()), Some(m));
    }

    #[test]
    fn a_small_object_is_checked_by_its_sha256_and_blocks_by_blake3() {
        let block = b"one block";
        let small = BlockDigests::of_small(9, &hex::encode(Sha256::digest(block))).unwrap();
        assert!(small.matches(0, block) && !small.matches(0, b"one blocK") && !small.matches(1, block));
        let blocks =
            BlockDigests::Blake3(vec![*blake3::hash(b"first").as_bytes(), *blake3::hash(b"second").as_bytes()]);
        assert!(blocks.matches(0, b"first") && blocks.matches(1, b"second"));
        assert!(!blocks.matches(1, b"first") && !blocks.matches(2, b"second"));
    }

    #[test]
    fn a_damaged_or_truncated_manifest_is_not_believed() {
        let text = sample().encode();
        let mut flipped = text.clone().into_bytes();
        flipped[40] ^= 1;
        assert_eq!(Manifest::decode(&flipped), None);
        assert_eq!(Manifest::decode(&text.as_bytes()[..text.len() - 10]), None);
        // A wrong number of blocks for the size, even with a good check line.
        let mut short = sample();
        short.blocks.pop();
        assert_eq!(Manifest::decode(short.encode().as_bytes()), None);
    }
}
