//! What is asked: a `NAME:path` address and who is asking (actor, request id, metadata).

use std::sync::atomic::{AtomicU64, Ordering};

use stowage_path::{ObjectPath, PathError, Prefix};

use crate::error::StorageError;
use crate::types::Metadata;

/// A parsed `NAME:path` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// A storage class or a disk name.
    pub name: String,
    /// The object path (or listing prefix), possibly empty, as written. The storage checks it
    /// once, as [`Address::object_path`] or [`Address::prefix`], after it resolved the name
    /// (so an unknown name is reported before a bad path).
    pub path: String,
}

impl Address {
    /// Parses `NAME:path`, e.g. `scratch:audit_123/data.csv`.
    pub fn parse(s: &str) -> Result<Address, StorageError> {
        match s.split_once(':') {
            Some((name, path)) if !name.is_empty() => Ok(Address { name: name.to_string(), path: path.to_string() }),
            _ => Err(StorageError::BadAddress(s.to_string())),
        }
    }

    /// The path, checked as an object path.
    pub fn object_path(&self) -> Result<ObjectPath, PathError> {
        ObjectPath::parse(&self.path)
    }

    /// The path, checked as a listing prefix (empty lists everything).
    pub fn prefix(&self) -> Result<Prefix, PathError> {
        Prefix::parse(&self.path)
    }
}

/// Who is asking, for one request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The person or service asking, as the client claims it.
    pub actor: Option<String>,
    /// The credential that authenticated the request: an API key's name, `signed-url:ID`,
    /// `local:USER` for the command line. Recorded next to the actor.
    pub authenticated_as: Option<String>,
    /// Unique id, carried into logs and the ledger.
    pub request_id: String,
    /// Request metadata (e.g. `cohort`, `purpose`).
    pub metadata: Metadata,
}

impl Request {
    /// A request with a fresh id and no actor.
    pub fn new() -> Request {
        Request { actor: None, authenticated_as: None, request_id: new_request_id(), metadata: Vec::new() }
    }

    /// Why the data is accessed, when the request says (request metadata `purpose`).
    pub fn purpose(&self) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == "purpose").map(|(_, v)| v.as_str())
    }
}

impl Default for Request {
    fn default() -> Self {
        Self::new()
    }
}

fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{:x}-{n:x}", nanos, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_at_the_first_colon() {
        assert_eq!(
            Address::parse("scratch:audit_123/a:b.csv").unwrap(),
            Address { name: "scratch".into(), path: "audit_123/a:b.csv".into() }
        );
        assert_eq!(Address::parse("default:").unwrap().path, "");
        assert!(matches!(Address::parse("nocolon"), Err(StorageError::BadAddress(_))));
        assert!(matches!(Address::parse(":x"), Err(StorageError::BadAddress(_))));
    }

    #[test]
    fn the_path_is_checked_as_an_object_path_or_a_prefix() {
        let dir = Address::parse("scratch:audit_123/").unwrap();
        assert_eq!(dir.prefix().unwrap(), "audit_123/");
        assert_eq!(dir.object_path(), Err(PathError::EmptySegment(2)));
        let object = Address::parse("scratch:audit_123/a:b.csv").unwrap();
        assert_eq!(object.object_path().unwrap(), "audit_123/a:b.csv");
        assert_eq!(Address::parse("default:").unwrap().object_path(), Err(PathError::Empty));
        assert_eq!(Address::parse("default:").unwrap().prefix(), Ok(Prefix::all()));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn an_address_splits_at_its_first_colon(name in "[^:]{1,20}", path in any::<String>()) {
            let a = Address::parse(&format!("{name}:{path}")).unwrap();
            prop_assert_eq!(a.name, name);
            prop_assert_eq!(a.path, path);
        }

        #[test]
        fn anything_else_is_a_bad_address_naming_the_input(s in any::<String>()) {
            match Address::parse(&s) {
                Ok(a) => prop_assert_eq!(format!("{}:{}", a.name, a.path), s),
                Err(StorageError::BadAddress(echo)) => {
                    prop_assert!(!s.contains(':') || s.starts_with(':'));
                    prop_assert_eq!(echo, s);
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
