//! The RFC 6962 (RFC 9162 §2.1) Merkle tree over the ledger's records: leaf and node hashes,
//! the root of any size, inclusion and consistency proofs, and their verification.
//!
//! Complete, aligned subtrees (a leaf, or `2^level` leaves starting at a multiple of
//! `2^level`) are stored once they exist (`merkle` table, see [`Nodes`]); every other subtree
//! hash is combined from at most `log2(n)` of them, so a root or a proof at a million records
//! costs a few dozen lookups.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The data a record's leaf hashes: its index and time (8 bytes each, big-endian), then its
/// body. The proof of a record carries exactly these, so it can be checked without the
/// database.
pub fn leaf_data(index: u64, at_ms: u64, body: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(16 + body.len());
    data.extend_from_slice(&index.to_be_bytes());
    data.extend_from_slice(&at_ms.to_be_bytes());
    data.extend_from_slice(body.as_bytes());
    data
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Where complete, aligned subtree hashes come from.
pub trait Nodes {
    /// Why a lookup failed.
    type Error;
    /// The hash of the complete subtree of `2^level` leaves starting at leaf `index << level`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The hash of leaves `start..end` (`start < end`), as RFC 6962's `MTH(D[start:end])`, for the
/// ranges its recursion visits (a range of one subtree's right part starts at a multiple of
/// the largest power of two below the subtree's size).
pub fn subtree<N: Nodes>(nodes: &N, start: u64, end: u64) -> Result<Hash, N::Error> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    let k = split(n);
    Ok(node_hash(&subtree(nodes, start, start + k)?, &subtree(nodes, start + k, end)?))
}

/// The root of the first `size` leaves.
pub fn root<N: Nodes>(nodes: &N, size: u64) -> Result<Hash, N::Error> {
    if size == 0 { Ok(empty_root()) } else { subtree(nodes, 0, size) }
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1).
pub fn inclusion_proof<N: Nodes>(nodes: &N, index: u64, size: u64) -> Result<Vec<Hash>, N::Error> {
    fn path<N: Nodes>(nodes: &N, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), N::Error> {
        let n = end - start;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            path(nodes, m, start, start + k, out)?;
            out.push(subtree(nodes, start + k, end)?);
        } else {
            path(nodes, m - k, start + k, end, out)?;
            out.push(subtree(nodes, start, start + k)?);
        }
        Ok(())
    }
    let mut out = Vec::new();
    if index < size {
        path(nodes, index, 0, size, &mut out)?;
    }
    Ok(out)
}

/// The consistency proof between the trees of `old` and `new` leaves (RFC 9162 §2.1.4.1).
pub fn consistency_proof<N: Nodes>(nodes: &N, old: u64, new: u64) -> Result<Vec<Hash>, N::Error> {
    fn sub<N: Nodes>(
        nodes: &N,
        m: u64,
        start: u64,
        end: u64,
        whole: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), N::Error> {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(subtree(nodes, start, end)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            sub(nodes, m, start, start + k, whole, out)?;
            out.push(subtree(nodes, start + k, end)?);
        } else {
            sub(nodes, m - k, start + k, end, false, out)?;
            out.push(subtree(nodes, start, start + k)?);
        }
        Ok(())
    }
    let mut out = Vec::new();
    if 0 < old && old < new {
        sub(nodes, old, 0, new, true, &mut out)?;
    }
    Ok(out)
}

/// Whether `proof` shows that the leaf `leaf` at `index` is in the tree of `size` leaves with
/// root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Whether `proof` shows that the tree of `new` leaves with root `new_root` extends the tree
/// of `old` leaves with root `old_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// The complete subtrees a tree grows by as leaves are appended, and the hashes of the ones
/// still waiting for a sibling (one per set bit of the size): what the committer keeps in
/// memory to store new nodes without reading old ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `pending[level]`: the complete subtree at `level` waiting for its right sibling.
    pending: Vec<Option<Hash>>,
}

impl Frontier {
    /// The frontier of the tree of `size` leaves, from its stored nodes.
    pub fn load<N: Nodes>(nodes: &N, size: u64) -> Result<Frontier, N::Error> {
        let mut pending = vec![None; 64 - size.leading_zeros() as usize];
        for (level, slot) in pending.iter_mut().enumerate() {
            if size >> level & 1 == 1 {
                // The subtree of this bit starts where the higher bits end.
                let start = (size >> (level + 1)) << (level + 1);
                *slot = Some(nodes.node(level as u32, start >> level)?);
            }
        }
        Ok(Frontier { size, pending })
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; calls `store(level, index, hash)` for it and for every subtree it
    /// completes.
    pub fn push(&mut self, leaf: Hash, mut store: impl FnMut(u32, u64, &Hash)) {
        let mut index = self.size;
        let mut hash = leaf;
        let mut level = 0usize;
        store(0, index, &hash);
        loop {
            if self.pending.len() <= level {
                self.pending.push(None);
            }
            match self.pending[level].take() {
                Some(left) => {
                    hash = node_hash(&left, &hash);
                    level += 1;
                    index >>= 1;
                    store(level as u32, index, &hash);
                }
                None => {
                    self.pending[level] = Some(hash);
                    break;
                }
            }
        }
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for hash in self.pending.iter().flatten() {
            acc = Some(match acc {
                None => *hash,
                Some(right) => node_hash(hash, &right),
            });
        }
        acc.unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use super::*;

    /// RFC 6962's MTH, straight from the definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    struct Stored(HashMap<(u32, u64), Hash>);

    impl Nodes for Stored {
        type Error = Infallible;
        fn node(&self, level: u32, index: u64) -> Result<Hash, Infallible> {
            Ok(self.0[&(level, index)])
        }
    }

    fn tree(n: u64) -> (Vec<Hash>, Stored, Frontier) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&leaf_data(i, 7, &format!("record {i}")))).collect();
        let mut stored = HashMap::new();
        let mut frontier = Frontier::default();
        for leaf in &leaves {
            frontier.push(*leaf, |l, i, h| {
                stored.insert((l, i), *h);
            });
        }
        (leaves, Stored(stored), frontier)
    }

    #[test]
    fn roots_match_the_definition_at_every_size() {
        for n in 0..70u64 {
            let (leaves, stored, frontier) = tree(n);
            let want = mth(&leaves);
            assert_eq!(root(&stored, n).unwrap(), want, "stored nodes, size {n}");
            assert_eq!(frontier.root(), want, "frontier, size {n}");
            assert_eq!(Frontier::load(&stored, n).unwrap(), frontier, "reloaded frontier, size {n}");
        }
    }

    #[test]
    fn inclusion_proofs_verify_and_fail_for_any_other_leaf_index_or_root() {
        for n in 1..40u64 {
            let (leaves, stored, _) = tree(n);
            let r = root(&stored, n).unwrap();
            for m in 0..n {
                let proof = inclusion_proof(&stored, m, n).unwrap();
                assert!(verify_inclusion(&leaves[m as usize], m, n, &proof, &r), "leaf {m} of {n}");
                let other = leaf_hash(b"not a record");
                assert!(!verify_inclusion(&other, m, n, &proof, &r));
                if n > 1 {
                    assert!(
                        !verify_inclusion(&leaves[m as usize], (m + 1) % n, n, &proof, &r),
                        "index {m} moved, size {n}"
                    );
                }
                assert!(!verify_inclusion(&leaves[m as usize], m, n, &proof, &empty_root()));
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_between_every_pair_of_sizes_and_catch_a_changed_leaf() {
        for new in 1..40u64 {
            let (leaves, stored, _) = tree(new);
            let new_root = root(&stored, new).unwrap();
            for old in 1..=new {
                let old_root = mth(&leaves[..old as usize]);
                let proof = consistency_proof(&stored, old, new).unwrap();
                assert!(verify_consistency(old, new, &old_root, &new_root, &proof), "{old} -> {new}");
                // A different history below `old` (one leaf changed) is not consistent.
                let mut changed = leaves[..old as usize].to_vec();
                changed[(old / 2) as usize] = leaf_hash(b"rewritten");
                assert!(!verify_consistency(old, new, &mth(&changed), &new_root, &proof), "rewrite {old} -> {new}");
            }
        }
    }
}
