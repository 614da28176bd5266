//! API keys, as the host keeps them: sha256 digests with their names, compared in constant time,
//! every configured key every time, so neither a key's content nor which key matched leaks
//! through timing. The name of the key that matched goes with the request into the ledger
//! (`authenticated_as`), next to the actor the client claims.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// The keys a client may present, with their names.
#[derive(Clone)]
pub struct ApiKeys(std::sync::Arc<[([u8; 32], String)]>);

/// Who a request authenticated as: the name of its API key, or `signed-url:ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub String);

impl ApiKeys {
    /// Keeps the digests of `keys`, (name, key) pairs.
    pub fn new(keys: &[(String, String)]) -> ApiKeys {
        ApiKeys(keys.iter().map(|(name, k)| (Sha256::digest(k.as_bytes()).into(), name.clone())).collect())
    }

    /// The name of the key `presented` is, if it is one. Every key is compared, in constant
    /// time, whichever matches.
    pub fn find(&self, presented: &[u8]) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = Choice::from(0);
        let mut index = 0u32;
        for (i, (key, _)) in self.0.iter().enumerate() {
            let hit = key.ct_eq(&digest);
            // Select without branching on the secret comparison.
            index = u32::conditional_select(&index, &(i as u32), hit);
            found |= hit;
        }
        bool::from(found).then(|| self.0.get(index as usize).map(|(_, name)| name.as_str())).flatten()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the keys.
    pub fn allows(&self, presented: &[u8]) -> bool {
        self.find(presented).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_keys_are_allowed_and_named() {
        let a = "a".repeat(32);
        let keys = ApiKeys::new(&[("web-1".into(), a.clone()), ("web-2".into(), "b".repeat(40))]);
        assert_eq!(keys.find(a.as_bytes()), Some("web-1"));
        assert_eq!(keys.find("b".repeat(40).as_bytes()), Some("web-2"));
        assert!(!keys.allows("a".repeat(31).as_bytes()));
        // Same length, one byte different (first, middle, last).
        for at in [0, 16, 31] {
            let mut near = a.clone().into_bytes();
            near[at] = b'c';
            assert!(!keys.allows(&near), "differs at byte {at}");
        }
        assert!(!keys.allows(b""));
    }
}
